"""Building index contents for tests: the changes one registry event makes, by name."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.ingest.models import (
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    PlatformEntry,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.search.models import IndexChange, PutFindings, PutNamespace, Query
from services.search.ports import SearchIndex
from services.search.query import parse_query

__all__ = ["Changes", "digest_of", "names", "search_all"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count(1)


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Changes:
    """Events for the index, each with a fresh id; times increase with ``minute``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Sequence[IndexChange]]] = []

    def _add(self, *changes: IndexChange) -> str:
        event_id = f"e{next(_ids)}"
        self.events.append((event_id, changes))
        return event_id

    def push(self, repository: str, tag: str, *, minute: int = 0, digest: str | None = None,
             kind: str = "image", platforms: Sequence[tuple[str, str]] = ()) -> str:
        digest = digest or digest_of(f"{repository}:{tag}")
        at = EPOCH + timedelta(minutes=minute)
        entries = tuple(PlatformEntry(os, arch, None, digest_of(f"{digest}{os}{arch}"), 10)
                        for os, arch in platforms)
        self._add(
            PutManifest(repository, digest, "application/vnd.oci.image.manifest.v1+json", kind,
                        None, 100, entries, None, "alice", at),
            PutTag(repository, tag, digest, "alice", at),
        )
        return digest

    def pull(self, repository: str, tag: str, times: int = 1) -> None:
        for _ in range(times):
            self._add(RecordPull(repository, tag, None, EPOCH))

    def untag(self, repository: str, tag: str) -> None:
        self._add(DeleteTag(repository, tag))

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._add(DeleteManifest(repository, digest))

    def delete_repository(self, repository: str) -> None:
        self._add(DeleteRepository(repository))

    def namespace(self, name: str, description: str = "", minute: int = 0) -> None:
        self._add(PutNamespace(name, description, EPOCH + timedelta(minutes=minute)))

    def scanned(self, digest: str, ids: Sequence[str] = (), **counts: int) -> None:
        """A finished scan of ``digest``; without counts, one that failed."""
        summary = None
        if counts:
            summary = dict.fromkeys(("Unknown", "Negligible", "Low", "Medium", "High",
                                     "Critical"), 0) | counts
        self._add(PutFindings(digest, summary, tuple(ids)))

    async def apply(self, index: SearchIndex) -> None:
        await index.apply(self.events)
        self.events = []


async def search_all(
    index: SearchIndex, query: Query | str, *, visible: frozenset[str] | None = None,
    page: int = 100,
) -> list[dict[str, object]]:
    """Every hit, page after page."""
    if isinstance(query, str):
        query = parse_query(query)
    found: list[dict[str, object]] = []
    after = None
    while True:
        hits = await index.search(query, visible=visible, after=after, limit=page)
        found.extend(item for _, item in hits)
        if len(hits) < page:
            return found
        after = hits[-1][0]


def names(items: list[dict[str, object]]) -> list[str]:
    """``repository``, ``repository:tag`` or the namespace, per result type."""
    out = []
    for item in items:
        if item["type"] in {"tag", "vulnerability"}:
            out.append(f"{item['repository']}:{item['tag']}")
        elif item["type"] == "namespace":
            out.append(str(item["namespace"]))
        else:
            out.append(str(item["repository"]))
    return out
