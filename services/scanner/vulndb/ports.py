"""What the vulnerability database needs from its store (SQLite by default, MongoDB at scale)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from services.scanner.vulndb.models import (
    Advisory,
    Candidate,
    EcosystemStatus,
    PackageKey,
    UpsertResult,
)

__all__ = ["VulnStore"]


class VulnStore(Protocol):
    async def upsert(self, advisories: Sequence[Advisory], imported_at: datetime) -> UpsertResult:
        """Store advisories in one unit of work; ``modified`` wins.

        An advisory stored with a newer ``modified`` is left alone (unchanged); with the same
        ``modified`` only ecosystems it did not hold yet are added (an import filtered to
        ``Debian:12`` followed by an unfiltered one completes the record); otherwise its entries
        for the record's ecosystems are replaced. Every ecosystem seen is stamped
        ``imported_at``. ``changed`` holds the packages whose advisories changed, before and
        after, which are also logged for ``changed_since``.
        """
        ...

    async def candidates(self, keys: Iterable[PackageKey]) -> list[Candidate]:
        """Every entry of a non-withdrawn advisory about one of these packages."""
        ...

    async def status(self) -> list[EcosystemStatus]:
        """Per ecosystem imported: how many advisories, the newest ``modified``, when imported."""
        ...

    async def changed_since(self, position: int) -> tuple[frozenset[PackageKey], int]:
        """Packages whose advisories changed after ``position`` (0: ever), and the new position."""
        ...

    async def advisory_ids(self, identifier: str) -> list[str]:
        """Advisories known by this id or alias (``CVE-2024-1234`` → its DSA, DLA, GHSA …)."""
        ...
