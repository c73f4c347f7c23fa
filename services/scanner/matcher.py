"""The embedded engine: an image's inventory against the OSV advisories in the store.

Each installed package is looked up under the ecosystem and name its advisories are filed by
(``vulndb.ecosystems``: source package and source version for Debian, Ubuntu and Alpine), then
checked against each advisory's ``versions`` list and ``ECOSYSTEM``/``SEMVER`` ranges as
ossf/osv-schema docs/schema.md "Evaluation" says: affected if listed in ``versions`` or inside
a range, where a range is the ``introduced`` … ``fixed`` (or ``last_affected``) intervals of its
sorted events, bounded by any ``limit``. The fix reported is the ``fixed`` event that ends the
interval the version is in; none (``last_affected``, or no end) is reported as unfixed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from services.scanner.models import Finding, Inventory, Package
from services.scanner.ports import Matcher, ScanStore
from services.scanner.versions import InvalidVersion, Scheme, scheme_for, sort_key
from services.scanner.vulndb.ecosystems import distribution_ecosystem, package_key
from services.scanner.vulndb.models import Candidate, PackageKey
from services.scanner.vulndb.ports import VulnStore

__all__ = [
    "NoVulnerabilityData",
    "OsvMatcher",
    "Rematcher",
    "affected_by",
    "inventories_to_rematch",
    "inventory_keys",
    "match_candidates",
]

log = logging.getLogger("dockyard.scanner.matcher")

NO_DATA = ("no vulnerability data is loaded: run 'dockyard vulndb import PATH' (images are"
           " matched as soon as it has run)")
# Installed packages grouped by what they are looked up under, with the version to compare.
Lookups = dict[PackageKey, list[tuple[Package, str]]]


class NoVulnerabilityData(LookupError):
    """The database holds no advisory at all, so an empty match would be a false "nothing
    found": the scan says "inventory only" instead, until ``dockyard vulndb import`` has run."""


class OsvMatcher:
    """``ports.Matcher`` over a ``VulnStore``; raises ``NoVulnerabilityData`` while it is empty."""

    def __init__(self, store: VulnStore) -> None:
        self._store = store
        self._loaded = False  # data is only ever added, so once loaded stays loaded

    async def match(self, inventory: Inventory) -> list[Finding]:
        if not self._loaded:
            self._loaded = bool(await self._store.status())
            if not self._loaded:
                raise NoVulnerabilityData(NO_DATA)
        lookups = _lookups(inventory)
        if not lookups:
            return []
        candidates = await self._store.candidates(lookups)
        # Thousands of version comparisons: off the event loop.
        return await asyncio.to_thread(match_candidates, lookups, candidates)


class Rematcher:
    """After the vulnerability database changed, match again only the images it concerns.

    Reads the packages whose advisories changed since the last run (``changed_since``, a
    position kept in memory: a fresh process starts from 0, so it re-matches every image with
    a package ever changed once, which is cheap and catches imports made while it was down),
    picks the stored inventories holding one, and replaces their findings. Images scanned while
    the database was empty ("inventory only", ``ScanStore.unmatched``) are matched too, so none
    keeps saying so once data is loaded. No layer is read.
    """

    def __init__(self, scans: ScanStore, vulns: VulnStore, matcher: Matcher) -> None:
        self._scans = scans
        self._vulns = vulns
        self._matcher = matcher
        self._position = 0

    async def run(self) -> int:
        """Re-match what the changes since the last run concern; how many images."""
        changed, position = await self._vulns.changed_since(self._position)
        matched = await self.rematch(changed) if changed else 0
        self._position = position
        return matched

    async def rematch(self, changed: Iterable[PackageKey]) -> int:
        """Re-match the images holding one of the ``changed`` packages (an import's
        ``ImportReport.changed``), and those never matched; how many images."""
        inventories = dict(await self._scans.inventories())
        digests = dict.fromkeys(inventories_to_rematch(changed, inventories.items()))
        unmatched = dict(await self._scans.unmatched())
        digests.update(dict.fromkeys(unmatched))
        matched = 0
        for digest in digests:
            try:
                findings = await self._matcher.match(inventories.get(digest) or unmatched[digest])
            except NoVulnerabilityData:
                return matched  # emptied meanwhile (a fresh database): nothing to match against
            try:
                await self._scans.save_findings(digest, findings)
            except LookupError:  # forgotten or rescanned meanwhile: its own scan decides
                continue
            matched += 1
        if matched:
            log.info("re-matched images after a vulnerability database change",
                     extra={"images": matched})
        return matched


def inventory_keys(inventory: Inventory) -> frozenset[PackageKey]:
    """The (ecosystem, package) pairs an inventory's advisories are looked up by."""
    return frozenset(_lookups(inventory))


def inventories_to_rematch(
    changed: Iterable[PackageKey], inventories: Iterable[tuple[str, Inventory]]
) -> list[str]:
    """The manifest digests whose inventory holds a package whose advisories changed.

    ``changed`` comes from an import (``ImportReport.changed``) or from
    ``VulnStore.changed_since``; only these images need matching again, from their stored
    inventories, without reading a layer.
    """
    wanted = frozenset(changed)
    return [digest for digest, inventory in inventories if inventory_keys(inventory) & wanted]


def _lookups(inventory: Inventory) -> Lookups:
    os_ecosystem = (None if inventory.distribution is None
                    else distribution_ecosystem(inventory.distribution))
    lookups: Lookups = defaultdict(list)
    for package in inventory.packages:
        key = package_key(package, os_ecosystem)
        if key is not None:
            ecosystem, name, version = key
            lookups[ecosystem, name].append((package, version))
    return lookups


def match_candidates(lookups: Lookups, candidates: Sequence[Candidate]) -> list[Finding]:
    """Findings for the installed packages, worst first; one per advisory and package."""
    findings: dict[tuple[str, Package], Finding] = {}
    unreadable: set[Package] = set()
    for candidate in candidates:
        scheme = scheme_for(candidate.ecosystem)
        if scheme is None:
            continue
        for package, version in lookups.get((candidate.ecosystem, candidate.name), ()):
            try:
                hit, fixed = affected_by(candidate.ranges, candidate.versions, scheme, version)
            except InvalidVersion as exc:
                if package not in unreadable:  # once per package, not once per advisory
                    unreadable.add(package)
                    log.warning("installed version cannot be compared", extra={
                        "package": package.name, "ecosystem": candidate.ecosystem,
                        "reason": str(exc)})
                continue
            if hit and (candidate.advisory, package) not in findings:
                findings[candidate.advisory, package] = Finding(
                    vulnerability_id=candidate.advisory,
                    aliases=candidate.aliases,
                    package=package,
                    fixed_version=fixed,
                    severity=candidate.severity,
                    summary=candidate.summary,
                )
    return sorted(findings.values(),
                  key=lambda f: (-f.severity, f.vulnerability_id, f.package.name))


def affected_by(
    ranges: Sequence[Any], versions: Sequence[str], scheme: Scheme, version: str
) -> tuple[bool, str | None]:
    """(is ``version`` affected, the version that fixes it or None) for one affected entry.

    ``ranges`` is the stored shape ``[[type, [[kind, version], …]], …]``, events sorted.
    ``InvalidVersion`` when the installed version cannot be read under the ecosystem's rules.
    """
    for kind, events in ranges:
        hit, fixed = _in_range(events, "semver" if kind == "SEMVER" else scheme, version)
        if hit:
            return True, fixed
    if version not in versions:
        return False, None
    # Listed explicitly; the nearest fix above it, if a range names one, is still the fix.
    current = sort_key(scheme, version)
    later = [
        (key, fix)
        for kind, events in ranges if kind != "SEMVER"
        for event_kind, fix in events if event_kind == "fixed"
        if (key := sort_key(scheme, fix)) > current
    ]
    return True, min(later)[1] if later else None


def _in_range(
    events: Sequence[Sequence[str]], scheme: Scheme, version: str
) -> tuple[bool, str | None]:
    """(inside, the fix ending the interval it is in) for one range."""
    current = sort_key(scheme, version)
    if events[-1][0] == "limit" and not any(
        kind == "limit" and ("*" in limit or current < sort_key(scheme, limit))
        for kind, limit in events
    ):
        return False, None  # at or above every limit (limits are stored last)
    vulnerable = False
    for kind, event_version in events:
        if kind == "limit":
            break
        if kind == "introduced" and event_version == "0":
            vulnerable = True
            continue
        position = sort_key(scheme, event_version)
        if position > current or (kind == "last_affected" and position == current):
            # Events are sorted: this one and all after it lie above the installed version.
            return vulnerable, event_version if vulnerable and kind == "fixed" else None
        vulnerable = kind == "introduced"
    return vulnerable, None
