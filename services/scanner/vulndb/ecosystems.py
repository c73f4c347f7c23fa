"""Which OSV ecosystem and package name an installed package's advisories are filed under.

ossf/osv-schema docs/schema.md, "Defined ecosystems": Debian, Ubuntu and Alpine records name
the *source* package and carry the release in the ecosystem (``Debian:12``,
``Ubuntu:22.04:LTS``, ``Alpine:v3.19``); language ecosystems name the package as its registry
does, and PyPI names compare after PEP 503 normalisation.
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

from services.scanner.models import Distribution, Package
from services.scanner.versions import scheme_for

__all__ = ["distribution_ecosystem", "normalize_name", "package_key"]

_LANGUAGE_ECOSYSTEMS = {"pypi": "PyPI", "npm": "npm", "go": "Go", "maven": "Maven"}
_RPM_DISTRIBUTIONS = {"almalinux": "AlmaLinux", "rocky": "Rocky Linux"}
# An OS package is matched only against its own distribution's kind of data.
_OS_SCHEMES = {"deb": "dpkg", "apk": "apk", "rpm": "rpm"}
_UBUNTU_LTS = re.compile(r"(\d\d)\.04")


def distribution_ecosystem(distribution: Distribution) -> str | None:
    """``debian 12`` → ``Debian:12``; None for a distribution OSV has no data for."""
    version = distribution.version_id
    match distribution.id:
        case "debian" if version:
            return f"Debian:{version.split('.')[0]}"
        case "ubuntu" if version:
            # LTS releases are the even years' April releases (Ubuntu's release cycle).
            lts = _UBUNTU_LTS.fullmatch(version)
            return f"Ubuntu:{version}:LTS" if lts and int(lts[1]) % 2 == 0 else f"Ubuntu:{version}"
        case "alpine" if version:
            return "Alpine:v" + ".".join(version.split(".")[:2])
        case name if name in _RPM_DISTRIBUTIONS and version:
            return f"{_RPM_DISTRIBUTIONS[name]}:{version.split('.')[0]}"
    return None


def normalize_name(ecosystem: str, name: str) -> str:
    """The form names are compared in: PEP 503 for PyPI, as written elsewhere."""
    return canonicalize_name(name) if ecosystem == "PyPI" else name


def package_key(
    package: Package, os_ecosystem: str | None
) -> tuple[str, str, str] | None:
    """(ecosystem, name, version) to look the package up by; None when nothing can match it.

    OS packages use their source name and source version (a binNMU ``1.2-3+b1`` built from
    source ``1.2-3`` is matched as ``1.2-3``): advisories are filed by source package.
    """
    language = _LANGUAGE_ECOSYSTEMS.get(package.kind)
    if language is not None:
        return language, normalize_name(language, package.name), package.version
    if os_ecosystem is None or _OS_SCHEMES.get(package.kind) != scheme_for(os_ecosystem):
        return None
    return (
        os_ecosystem,
        package.source_name or package.name,
        package.source_version or package.version,
    )
