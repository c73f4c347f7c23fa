"""Version ordering per ecosystem, each by its own rules, with maintained libraries.

An OSV ``ECOSYSTEM`` range is ordered by the ecosystem's rules (ossf/osv-schema docs/schema.md,
"affected[].ranges[].type"); a ``SEMVER`` range by SemVer 2.0 precedence whatever the
ecosystem. ``scheme_for`` names the rules of an OSV ecosystem, ``sort_key`` turns a version
into something ``<`` orders by them:

- dpkg (Debian, Ubuntu): python-debian's parser, with a tuple key that orders as its
  comparison does (see ``dpkg.py``): epochs, ``~`` before anything, ``+debNuM``, ``~bpo``.
- apk (Alpine): univers' ``AlpineLinuxVersion`` (apk-tools' rules: ``_rc``/``_p`` suffixes,
  ``-rN`` package releases).
- rpm (AlmaLinux, Rocky Linux, Red Hat): univers' ``RpmVersion`` (rpmvercmp, epoch:version-release).
- pep440 (PyPI): ``packaging.version.Version`` (pre, post, dev and local segments).
- semver (npm, Go, SEMVER ranges): univers' ``SemverVersion`` (prereleases before releases).
- maven: univers' ``MavenVersion`` (ComparableVersion: qualifiers such as SNAPSHOT, rc).

``sort_key`` caches keys: a package's installed version and an advisory's fixed versions recur.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

from packaging.version import InvalidVersion as Pep440Invalid
from packaging.version import Version as Pep440Version
from univers.versions import (
    AlpineLinuxVersion,
    MavenVersion,
    RpmVersion,
    SemverVersion,
)
from univers.versions import (
    InvalidVersion as UniversInvalid,
)

from services.scanner.versions.dpkg import dpkg_key

__all__ = ["InvalidVersion", "Scheme", "compare", "parse_key", "scheme_for", "sort_key"]

Scheme = Literal["dpkg", "apk", "rpm", "pep440", "semver", "maven"]

# OSV ecosystem (the part before the first ':') → the rules its versions follow.
_SCHEMES: dict[str, Scheme] = {
    "Debian": "dpkg",
    "Ubuntu": "dpkg",
    "Alpine": "apk",
    "AlmaLinux": "rpm",
    "Rocky Linux": "rpm",
    "Red Hat": "rpm",
    "PyPI": "pep440",
    "npm": "semver",
    "Go": "semver",
    "Maven": "maven",
}


class InvalidVersion(ValueError):
    """The string is not a version under the ecosystem's rules."""


def scheme_for(ecosystem: str) -> Scheme | None:
    """The rules of an OSV ecosystem (``Debian:12`` → dpkg); None when Dockyard has none."""
    return _SCHEMES.get(ecosystem.partition(":")[0])


def _semver(version: str) -> Any:
    # Go's module versions carry a "v" that OSV strips (docs/schema.md, SEMVER); strip it too.
    return SemverVersion(version.removeprefix("v"))


_PARSERS: dict[Scheme, Callable[[str], Any]] = {
    "dpkg": dpkg_key,
    "apk": AlpineLinuxVersion,
    "rpm": RpmVersion,
    "pep440": Pep440Version,
    "semver": _semver,
    "maven": MavenVersion,
}


def parse_key(scheme: Scheme, version: str) -> Any:
    """An object ordering like ``version`` under ``scheme``; ``InvalidVersion`` if it is none."""
    try:
        return _PARSERS[scheme](version)
    except (ValueError, TypeError, UniversInvalid, Pep440Invalid) as exc:
        raise InvalidVersion(f"{version!r} is not a valid {scheme} version") from exc


# Matching meets the same installed and fixed versions again and again; importing meets each
# once, so it calls parse_key and leaves the cache (and the garbage collector's work) small.
sort_key = lru_cache(maxsize=1 << 16)(parse_key)


def compare(scheme: Scheme, left: str, right: str) -> int:
    """-1, 0 or 1 as ``left`` sorts before, with or after ``right``."""
    a, b = sort_key(scheme, left), sort_key(scheme, right)
    return int(a > b) - int(a < b)
