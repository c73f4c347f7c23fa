"""The search index's records: what a query asks, what the index holds, what it changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.ingest.models import Operation, PlatformEntry

__all__ = [
    "IndexChange",
    "IndexedRepository",
    "IndexedTag",
    "Match",
    "Position",
    "PutFindings",
    "PutNamespace",
    "Query",
    "SearchType",
    "platform_fields",
]

SearchType = Literal["repository", "tag", "namespace", "vulnerability"]
# How a name matched the query; results are ranked by it first.
Match = Literal["exact", "prefix", "substring"]
# A result's place in the ranking: (match class, -popularity, -recency in µs, row id). Ordered
# ascending, so a keyset cursor is the last position of a page.
Position = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search request; ``services.search.query.parse_query`` builds it.

    ``text`` is what names are matched against (lower case). For ``repo:tag`` queries
    ``repository`` and ``tag`` hold the two sides; for digest prefixes, ``digest``.
    """

    type: SearchType
    text: str
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    namespace: str | None = None
    artifact_type: str | None = None


@dataclass(frozen=True, slots=True)
class PutNamespace:
    """A namespace exists (created in the auth service, or implied by a repository)."""

    name: str
    description: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PutFindings:
    """A scan of ``digest`` finished (scan-events): its findings counted by severity (None:
    the scan failed or was unsupported, which never means "no vulnerabilities") and the ids
    found, each advisory with its aliases (``DSA-5000-1`` and the ``CVE-…`` it fixes)."""

    digest: str
    summary: dict[str, int] | None
    vulnerabilities: tuple[str, ...]


# What one event changes in the index: the catalog's own operations (services.ingest.catalog
# decides them, so the index and the catalog read events the same way), namespace upserts and
# scan results.
IndexChange = Operation | PutNamespace | PutFindings


@dataclass(frozen=True, slots=True)
class IndexedTag:
    name: str
    digest: str
    kind: str | None
    artifact_type: str | None
    platforms: tuple[PlatformEntry, ...]
    pushed_by: str | None
    pushed_at: datetime
    pulls: int


@dataclass(frozen=True, slots=True)
class IndexedRepository:
    """A repository as a full rebuild reads it from the catalog."""

    name: str
    created_at: datetime
    updated_at: datetime
    pulls: int
    tags: tuple[IndexedTag, ...]



def platform_fields(platforms: Iterable[PlatformEntry]) -> list[dict[str, str | None]]:
    """What the index keeps of a multi-platform index's children: which platforms, by digest.

    Sizes are the catalog's business (it reads every child manifest for them); the index leaves
    them out, so the indexer and a rebuild from the catalog store the same.
    """
    return [{"os": p.os, "architecture": p.architecture, "variant": p.variant, "digest": p.digest}
            for p in platforms]
